"""Grading a class: the student edition, collecting submissions, and isolated, parallel autograding.

Modules, one job each:

- :mod:`~sslcourse.grading.publish`: the student edition of the course (no solutions, hidden tests or model
  answers) and the leak check that proves it;
- :mod:`~sslcourse.grading.collect`: notebooks downloaded from Colab and exported by a learning management
  system, filed into nbgrader's ``submitted/<student>/<lab>/`` after checking which lab each one is;
- :mod:`~sslcourse.grading.job`, :mod:`~sslcourse.grading.trusted`, :mod:`~sslcourse.grading.worker`,
  :mod:`~sslcourse.grading.sandbox`, :mod:`~sslcourse.grading.protocol`: one submission graded with its code in a
  sandbox and the tests in a separate trusted process;
- :mod:`~sslcourse.grading.nbgrader_plugin`: the same inside ``nbgrader autograde`` (``IsolatedExecute``);
- :mod:`~sslcourse.grading.grade`: a lab's submissions graded in parallel, resumable, with a report;
- :mod:`~sslcourse.grading.references`: the package's own versions of the functions students write.
"""
